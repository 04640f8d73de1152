-- End every login of a user but the caller's (退出其他设备): every session but the caller's
-- and every refresh-token family (an API client's login) but the caller's, in one step.
-- KEYS: session index, token family index (both in the user's {user_id} slot). ARGV: the
-- prefix of the user's session keys, digest of the session to keep ('' when the caller is
-- an API client), the prefix of the user's family keys, the family to keep ('' when the
-- caller is a browser). Read and delete in one step, as session_end_all: a session or
-- family created meanwhile is either listed (and ended) or created after. Returns how many
-- live sessions and families ended.
local ended = 0
for _, digest in ipairs(redis.call('HKEYS', KEYS[1])) do
    if digest ~= ARGV[2] then
        ended = ended + redis.call('DEL', ARGV[1] .. digest)
        redis.call('HDEL', KEYS[1], digest)
    end
end
for _, family in ipairs(redis.call('HKEYS', KEYS[2])) do
    if family ~= ARGV[4] then
        ended = ended + redis.call('DEL', ARGV[3] .. family)
        redis.call('HDEL', KEYS[2], family)
    end
end
return ended
