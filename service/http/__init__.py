"""The HTTP surface: what a client talks to. `app` builds the FastAPI app and its lifespan; `routes` holds the
endpoints (/relight, /metrics, /healthz, /readyz, /info, /); `uploads` parses /relight's multipart body;
`openapi` is the API's written description (responses, request body, error schema); `middleware` gives request
IDs and limits request bodies while they stream in; `page` and `static/` are the web page at `/`; `state` is what
the running app holds; `draining` finishes accepted requests on SIGTERM. It reaches the model only through
`service.batching.handle.ModelHandle`, so it does not know whether the model is in this process or another."""
