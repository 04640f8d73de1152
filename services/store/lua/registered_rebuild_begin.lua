-- Begin a rebuild: take the lock, empty the set (keeping only the sentinel) and raise the
-- epoch. Nothing if another rebuild holds the lock (or a failed one's pause), or if the set
-- is ready and intact. KEYS: lock, set, epoch, ready. ARGV: token, lock TTL (ms), set TTL
-- (s), epoch TTL (s). Returns the epoch the rebuild must still see at its end, or false.
if redis.call('EXISTS', KEYS[4]) == 1 and redis.call('SISMEMBER', KEYS[2], '') == 1 then
    return false
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
redis.call('DEL', KEYS[4])
redis.call('UNLINK', KEYS[2])
redis.call('SADD', KEYS[2], '')
redis.call('EXPIRE', KEYS[2], ARGV[3])
local epoch = redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], ARGV[4])
return epoch
