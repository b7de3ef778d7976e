"""Wyoming speech-to-text server (Home Assistant Assist): an adapter on the core's loop, holding no state the core
needs. `server` accepts connections, `session` runs one client's requests, `wire` reads events within limits,
`pcm` converts client audio to 16 kHz mono, `info` describes the program, `announce` is the zeroconf record."""
