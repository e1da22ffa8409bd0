"""Container networking: networks and address leases, bridges and veths, ports."""
