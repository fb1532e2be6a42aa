"""relight-serve with RELIGHT_WORKERS > 1 (unused otherwise): several HTTP worker processes and one model process.
`supervisor` starts them, passes signals on and replaces a worker that dies; `model_process` holds the one
`LocalModel` and serves the workers over a Unix socket (framed by `messages`); `remote_model` is the `ModelHandle`
each HTTP worker holds; `shared_images` passes pixels between them through shared memory."""
