"""The HTTP API: `create_app(settings)`, its middleware, routers and error responses."""
