"""The core: one asyncio event loop that owns every piece of mutable state of the daemon."""
