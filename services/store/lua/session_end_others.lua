-- End every session of a user but the caller's (退出其他设备). KEYS: index. ARGV: the prefix
-- of the user's session keys, digest of the session to keep. Read and delete in one step,
-- as session_end_all. Returns how many ended.
local ended = 0
for _, digest in ipairs(redis.call('HKEYS', KEYS[1])) do
    if digest ~= ARGV[2] then
        redis.call('DEL', ARGV[1] .. digest)
        redis.call('HDEL', KEYS[1], digest)
        ended = ended + 1
    end
end
return ended
