"""t/fake_provider.py: the provider examples/refresh_worker.py calls in
t/015_refresh_workers.pl, used only there.

How it answers depends on the connection's provider_slug, so the test
knows what to expect of each connection:
  ok...     answers after FAKE_LATENCY seconds (default 0.02)
  slow...   answers after FAKE_SLOW seconds (default 3), longer than the lease
  flaky...  fails (a timeout) on the first two attempts, then answers
  dead...   always fails: refresh ends exhausted
  gone...   refuses the refresh token (invalid_grant): the worker marks it revoked
FAKE_DELAY (seconds, default 0) delays every call of this process more.

The new credentials name the lease token the worker presented, so the test
can tell, from the stored credentials alone, under which lease each
refresh was stored.
"""

import json
import os
import time
from datetime import datetime, timedelta, timezone


class ProviderTimeout(Exception):
    """A transient failure: the worker records it and retries later."""


class InvalidGrant(Exception):
    """The provider refused the refresh token for good."""
    revoked = True


def refresh(connection, credentials):
    slug = connection["provider_slug"]
    time.sleep(float(os.environ.get("FAKE_DELAY", "0")))
    if slug.startswith("slow"):
        time.sleep(float(os.environ.get("FAKE_SLOW", "3")))
    else:
        time.sleep(float(os.environ.get("FAKE_LATENCY", "0.02")))
    if slug.startswith("dead") or (slug.startswith("flaky") and connection["refresh_attempts"] < 2):
        raise ProviderTimeout("provider timed out")
    if slug.startswith("gone"):
        raise InvalidGrant("invalid_grant")
    new = json.dumps({"lease_token": str(connection["lease_token"]), "pid": os.getpid()}).encode()
    return new, datetime.now(timezone.utc) + timedelta(hours=1)
