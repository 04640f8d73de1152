-- The code of a mobile: a hash {mac, tries} (the HMAC of the code, wrong tries so far) that
-- expires with the code.

-- Store a new code in place of the current one; returns the one it replaced as
-- {mac, tries, expiry (Unix ms)}, or {} if there was none, so a refusal can put it back.
local function sms_code_replace(key, mac, ttl)
    local old = redis.call('HMGET', key, 'mac', 'tries')
    local replaced = {}
    if old[1] then replaced = {old[1], old[2] or '0', redis.call('PEXPIRETIME', key)} end
    redis.call('DEL', key)
    redis.call('HSET', key, 'mac', mac, 'tries', 0)
    redis.call('EXPIRE', key, ttl)
    return replaced
end

-- Put a code back, unless the mobile has a code again; it expires when it would have.
local function sms_code_put_back(key, mac, tries, expires_at_ms)
    if redis.call('EXISTS', key) == 1 then return 0 end
    redis.call('HSET', key, 'mac', mac, 'tries', tries)
    redis.call('PEXPIREAT', key, expires_at_ms)
    return 1
end
