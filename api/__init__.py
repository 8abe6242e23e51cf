"""HTTP only: the native v1 router and thin compat routers over one core task service."""
