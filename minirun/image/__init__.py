"""Images: the Dockerfile parser, the builder, and the local content-addressed store."""
