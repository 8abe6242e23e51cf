"""The web console at /console: a static page that calls the v1 API with the user's key."""
