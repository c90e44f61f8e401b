"""The API's routers: thin; the work happens in plain functions elsewhere in the package."""
