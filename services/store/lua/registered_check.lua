--! uses: registered_mobile
-- Is a mobile registered (1), not (0), or unknown (-1)? KEYS: ready, set. ARGV: mobile.
return registered_mobile(KEYS[1], KEYS[2], ARGV[1])
