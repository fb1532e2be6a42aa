"""The model on its device, behind the queue. `engine` runs a batch on the device (weights, precision, warm-up,
torch.compile); `local_model` joins it to the queue (service.batching.batcher) in one process: the `ModelHandle`
the app uses with RELIGHT_WORKERS=1 (with more, the model process uses it). `weights_swap` loads, checks and warms
new weights beside the live ones; `hangup` is SIGHUP's swap policy."""
