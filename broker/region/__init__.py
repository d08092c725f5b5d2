"""The region: the signed regional directory every node installs and checks every hop against (DESIGN §8)."""
