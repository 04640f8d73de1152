-- One batch of a rebuild: add mobiles read from MySQL, if the rebuild still holds the lock
-- (which each batch extends). KEYS: lock, set. ARGV: token, lock TTL (ms), mobiles...
-- Returns 1, or 0 when the lock is lost (the rebuild stops).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
for first = 3, #ARGV, 1000 do
    redis.call('SADD', KEYS[2], unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
return 1
