-- The session transition, applied atomically to one entity's state hash.
-- It must implement exactly transition() in session.go (see the package
-- documentation); TestDifferential compares the two.
--
-- KEYS[1]  the entity's state hash: id, start, last, count
-- ARGV[1]  event time, Unix nanoseconds, canonical decimal, >= 0
-- ARGV[2]  session timeout, nanoseconds, canonical decimal, > 0
-- ARGV[3]  state TTL, milliseconds
-- ARGV[4]  entity id
--
-- Reply: {0, id, start, last, count, is_new} when applied;
--        {1, id, start, last, count, 0} when the event precedes the start
--        of the current session (nothing written);
--        {2, reason} when the stored state is malformed (nothing written).
--
-- Lua numbers are doubles, exact only below 2^53, and Unix nanoseconds
-- reach 2^63; so times stay decimal strings and are compared and added as
-- (seconds, nanoseconds) pairs, each exact.

local function split(s)
  local n = #s
  if n <= 9 then
    return 0, tonumber(s)
  end
  return tonumber(string.sub(s, 1, n - 9)), tonumber(string.sub(s, n - 8))
end

-- before reports whether a < b.
local function before(as, an, bs, bn)
  return as < bs or (as == bs and an < bn)
end

local function digits(s)
  return type(s) == 'string' and #s >= 1 and #s <= 19 and string.match(s, '^%d+$') ~= nil
end

local key, t, entity = KEYS[1], ARGV[1], ARGV[4]
local ts, tn = split(t)
local h = redis.call('HMGET', key, 'id', 'start', 'last', 'count')
local id, start, last, count = h[1], h[2], h[3], h[4]
local isnew = 0

if not id and not start and not last and not count then
  isnew = 1 -- first event, or the state expired
else
  if not (type(id) == 'string' and #id == 32 and digits(start) and digits(last) and digits(count)) then
    return {2, 'fields id, start, last, count missing or malformed'}
  end
  local ss, sn = split(start)
  local ls, ln = split(last)
  count = tonumber(count)
  if before(ts, tn, ss, sn) then
    return {1, id, start, last, count, 0}
  end
  if before(ts, tn, ls, ln) then
    count = count + 1 -- late but inside the session: last stays
  else
    local os, on = split(ARGV[2])
    local es, en = ls + os, ln + on
    if en >= 1000000000 then
      es, en = es + 1, en - 1000000000
    end
    if before(ts, tn, es, en) then -- t - last < timeout
      last, count = t, count + 1
    else
      isnew = 1
    end
  end
end

if isnew == 1 then
  id = string.sub(redis.sha1hex(entity .. '\0' .. t), 1, 32)
  start, last, count = t, t, 1
end
redis.call('HSET', key, 'id', id, 'start', start, 'last', last, 'count', string.format('%d', count))
redis.call('PEXPIRE', key, ARGV[3])
return {0, id, start, last, count, isnew}
