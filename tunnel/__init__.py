"""Field Station tunnel: a Sans-I/O encrypted, resumable link."""
