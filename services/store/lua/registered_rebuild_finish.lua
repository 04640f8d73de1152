-- End a rebuild: mark the set ready only if no removal raised the epoch since it began (a
-- batch may have read a row whose number was released meanwhile); otherwise the lock stays
-- as a pause before the next attempt (none: 0 ms). KEYS: lock, set, epoch, ready.
-- ARGV: token, epoch at the start, ready TTL (s), set TTL (s), pause (ms).
-- Returns 1 ready, 0 epoch moved, -1 lock lost.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('GET', KEYS[3]) ~= ARGV[2] then
    if tonumber(ARGV[5]) > 0 then
        redis.call('SET', KEYS[1], 'pause', 'PX', ARGV[5])
    else
        redis.call('DEL', KEYS[1])
    end
    return 0
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[4], ARGV[1], 'EX', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
