"""SMS/voice providers behind one interface, and the failover sender that orders them."""
