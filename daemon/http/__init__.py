"""The daemon's HTTP face: OpenAI-compatible transcription, jobs, records, sessions, events, the console.

An adapter: it translates HTTP to calls on the core (`daemon.core.app.App`), on the core's own event loop, and
holds no state the core needs.
"""
