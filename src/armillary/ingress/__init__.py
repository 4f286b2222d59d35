"""Event ingress: webhooks from outside senders, verified before anything trusts them."""
