"""Test-only start-up hook for main.py subprocesses that talk to local emulators.

With no Google credentials on the machine, Beam retries `google.auth.default` with backoff (about 25 s per
process) before falling back to anonymous access. Emulators need no credentials, so when the tests set
TFX_INFERENCE_TEST_ANONYMOUS=1 (and put this folder on PYTHONPATH), google.auth.default answers at once with
anonymous credentials. Nothing like this ships in the product.
"""

import os

if os.environ.get("TFX_INFERENCE_TEST_ANONYMOUS") == "1":
    import google.auth
    from google.auth.credentials import AnonymousCredentials

    def _anonymous(*args, **kwargs):
        return AnonymousCredentials(), os.environ.get("GOOGLE_CLOUD_PROJECT", "test-project")

    google.auth.default = _anonymous
