"""Optional integrations with other devices on the broker: Home Assistant discovery, the Rhasspy Hermes bridge."""
