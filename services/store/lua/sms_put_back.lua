--! uses: sms_code
-- Put back a code that was used for work that then failed (e.g. the database), with fresh
-- tries, unless a newer code was sent meanwhile. KEYS: code. ARGV: mac, expiry (Unix ms).
return sms_code_put_back(KEYS[1], ARGV[1], 0, ARGV[2])
