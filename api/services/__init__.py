"""The API's services: routers translate HTTP into their calls, and they own every transaction."""
