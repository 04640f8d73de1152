-- Take a mobile out of the set and raise the epoch: called before its row releases it and
-- again after. KEYS: set, epoch. ARGV: mobile, epoch TTL (s). Returns the new epoch.
redis.call('SREM', KEYS[1], ARGV[1])
local epoch = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return epoch
