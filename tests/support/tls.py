"""One TLS context for every HTTP client the test helpers make.

httpx builds a new SSLContext for each Client, loading the CA bundle (10-50 ms of
CPU), even for plain http:// URLs. The waiting helpers make a client per poll, so
that cost was paid up to 50 times a second per waiting test, on the same two cores
as the servers and daemons under test. Handing every client this one context makes
a client cost a tenth of a millisecond.
"""

from __future__ import annotations

import ssl

CONTEXT = ssl.create_default_context()
