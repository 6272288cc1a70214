"""The core every matrix-stack service uses: Matrix client layer, durable outbox, service kit."""
