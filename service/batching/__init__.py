"""The queue in front of the model and the model itself. `handle` writes down what the HTTP routes need of a model
(`ModelHandle`), the one result type (`Outcome`) and the refusals; `batcher` is the queue's policy (admission,
smallest job first, same-shape batches under a count and a pixel budget, max wait, dropping withdrawn work);
`engine` runs a batch on the device (weights, precision, warm-up, torch.compile); `local_model` joins the two in
one process: the `ModelHandle` the app uses with RELIGHT_WORKERS=1 (with more, the model process uses it).
`weights_swap` loads, checks and warms new weights beside the live ones; `hangup` is SIGHUP's swap policy."""
