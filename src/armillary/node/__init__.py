"""The node daemon: connects to the server, runs its assigned replicas as supervised
processes, reports what they do. Never opens the database."""
