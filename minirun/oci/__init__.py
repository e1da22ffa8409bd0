"""The OCI door: runc's command line over OCI bundles (config.json → ContainerSpec)."""
