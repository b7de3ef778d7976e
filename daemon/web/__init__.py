"""The live caption page (static files) and the small HTTP server that serves it."""
