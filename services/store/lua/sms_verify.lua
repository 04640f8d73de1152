-- Check a submitted code and count the attempt in one atomic step, so concurrent guesses can
-- neither exceed the attempt limit nor both use a right code. KEYS: code. ARGV: mac, max
-- attempts. Returns {outcome, detail}: 0 = no code; 1 = right (code deleted, detail = when it
-- would have expired, Unix ms); 2 = wrong (detail = tries); 3 = wrong and the code destroyed
-- (limit reached).
local mac = redis.call('HGET', KEYS[1], 'mac')
if not mac then return {0, 0} end
if mac == ARGV[1] then
    local expires_at_ms = redis.call('PEXPIRETIME', KEYS[1])
    redis.call('DEL', KEYS[1])
    return {1, expires_at_ms}
end
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
if tries >= tonumber(ARGV[2]) then
    redis.call('DEL', KEYS[1])
    return {3, tries}
end
return {2, tries}
