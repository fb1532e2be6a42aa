"""The queue in front of the model. `handle` writes down what the HTTP routes need of a model (`ModelHandle`), the
one result type (`Outcome`) and the refusals; `batcher` is the queue's policy (admission, smallest job first,
same-shape batches under a count and a pixel budget, max wait, dropping withdrawn work, switching weights between
batches). It imports no torch: the device is service.inference's."""
