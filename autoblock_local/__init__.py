"""The local stack: autoblock on emulated AWS, on this machine (``make local``)."""
