"""livekit-jwt: LiveKit tokens for Element Call (MSC4195), byte-compatible with lk-jwt-service and
SSRF-safe."""
