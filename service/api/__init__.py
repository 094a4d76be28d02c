"""HTTP front ends: thin routes that parse the wire format and call the shared data plane."""
