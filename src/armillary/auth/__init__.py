"""Who is calling and what they may do.

API keys and their roles (`tokens`), short-lived tenant tokens (`tenant_tokens`),
dashboard users with argon2id passwords, sessions and CSRF (`passwords`, `sessions`),
the one access decision every route goes through (`access`, pure), and the server's
secret key with what it protects (`keys`, `sealing`, `secrets`).
"""
