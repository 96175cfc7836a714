# The emulator data the tests share: small, seeded.
SEED, GUIDES, CUSTOMERS = 3, 12, 400
