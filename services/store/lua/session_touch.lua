-- Note that a session was used: its last-seen time and address, at most once per ARGV[3]
-- seconds, the session's expiry kept. KEYS: session. ARGV: now (Unix s), address, interval.
-- Returns 1 if written, 0 if the session is gone or was noted less than ARGV[3] s ago.
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local session = cjson.decode(raw)
local now = tonumber(ARGV[1])
if session.seen and now - tonumber(session.seen) < tonumber(ARGV[3]) then return 0 end
session.seen = now
session.address = ARGV[2]
redis.call('SET', KEYS[1], cjson.encode(session), 'KEEPTTL')
return 1
