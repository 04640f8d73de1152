-- Add a mobile whose row has committed, unless a removal (or a rebuild's start) raised the
-- epoch since the caller read it: that removal may have been of this very number, and a late
-- add must never bring back a released one. A set created here (none before) gets the TTL.
-- KEYS: set, epoch. ARGV: mobile, epoch read before the row was written, set TTL (s).
-- Returns 1 added, 0 not (epoch moved).
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[2] then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('TTL', KEYS[1]) == -1 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return 1
