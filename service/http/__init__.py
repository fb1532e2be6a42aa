"""The HTTP surface: what a client talks to. `app` builds the FastAPI app and its lifespan; `routes` holds the
endpoints (/relight, /metrics, /healthz, /readyz, /info, /); `uploads` parses /relight's multipart body;
`openapi` is the API's written description (responses, request body, error schema); `middleware` gives request
IDs and limits request bodies while they stream in; `header_deadline` drops a client whose headers come too slowly;
`page`, `examples` and `static/` are the web page at `/` and its photos; `admin` is POST /admin/reload; `state` is
what the running app holds; `draining` finishes accepted requests on SIGTERM. The routes reach the model only
through `service.batching.handle.ModelHandle`, so they do not know whether it is in this process or another; the
app factory alone chooses (an Engine in a LocalModel here, or the RemoteModel it is given)."""
