"""Who is calling: tokens and their roles. Later: API keys, users, sessions."""
