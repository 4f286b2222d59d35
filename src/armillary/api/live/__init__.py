"""The live channels of `/api/v1/ws` (docs/api.md "Live channels").

- `frames`: the protocol's pure part: reading a client's frame and its filters (each
  mistake named by its field path), which change a subscription sees and as what
  (ADDED / MODIFIED / DELETED), watch positions, frame text;
- `sources`: what each channel watches and how it is read from the store;
- `hub`: one per server: hears the change feed, re-reads what changed (one read per
  burst, whatever the number of subscribers), keeps the present state of what is
  watched and a bounded history for resumes, and fans each change out;
- `socket`: one per WebSocket: who is calling, its subscriptions, its bounded queue
  of outgoing frames, pings, log streams.
"""
