"""LitServe doing the serving job with a zero-cost model, for bench/serving_ceiling.py --litserve.

    python bench/litserve_identity.py PORT

POST /relight with a multipart `image`: Pillow decode, identity, PNG at level 1. LitServe
decodes, predicts and encodes one after another in its worker process.
"""

import io
import sys

import litserve as ls
import numpy as np
from PIL import Image


class IdentityAPI(ls.LitAPI):
    def setup(self, device):
        pass

    def decode_request(self, request):
        return np.asarray(Image.open(request["image"].file).convert("RGB"))

    def predict(self, pixels):
        return pixels

    def encode_response(self, pixels):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
        return ls.Response(buffer.getvalue(), media_type="image/png")


if __name__ == "__main__":
    ls.LitServer(IdentityAPI(api_path="/relight"), accelerator="cpu").run(
        port=int(sys.argv[1]), generate_client_file=False
    )
