-- matrix-stack router: sets the hash key the route's ring hash uses, from the route's metadata
-- ("hash": room | user | origin), and refuses media bodies over the route's size limit. It runs
-- only on routes that hash or take media; the others skip it.
-- WHOAMI_CLUSTER, CACHE_TTL and CACHE_MAX are set by the chart above this line.
local HASH_HEADER = "x-matrix-stack-hash"
local cache, cache_size = {}, 0

local function unescape(s)
  if not s:find("%", 1, true) then return s end -- the usual case: nothing to decode
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- A short non-reversible tag for a token: the hash key must never carry the token itself.
local function tag(s)
  local h1, h2 = 5381, 52711
  for i = 1, #s do
    local c = s:byte(i)
    h1 = (h1 * 33 + c) % 4294967296
    h2 = (h2 * 31 + c) % 4294967296
  end
  return string.format("t:%08x%08x", h1, h2)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local DIGIT = { [("+"):byte()] = 62, [("/"):byte()] = 63 } -- standard base64 read as url-safe
for i = 1, #B64 do DIGIT[B64:byte(i)] = i - 1 end
local function b64url_decode(s)
  local out, value, bits = {}, 0, 0
  for i = 1, #s do
    local digit = DIGIT[s:byte(i)]
    if digit == nil then return nil end
    value = value * 64 + digit
    bits = bits + 6
    if bits >= 8 then
      bits = bits - 8
      local scale = 2 ^ bits
      out[#out + 1] = string.char(math.floor(value / scale) % 256)
      value = value % scale
    end
  end
  return table.concat(out)
end

-- A token's localpart, decoded once per worker (false: not a localpart); a user's tokens share it.
local localparts, localparts_size = {}, 0
local function localpart_of(encoded)
  local known = localparts[encoded]
  if known ~= nil then return known end
  local localpart = b64url_decode(encoded)
  if localpart == nil or #localpart == 0 then localpart = false end
  if localparts_size >= CACHE_MAX then localparts, localparts_size = {}, 0 end
  localparts[encoded], localparts_size = localpart, localparts_size + 1
  return localpart
end

-- The room: the path segment after /rooms/, /join/ or /knock/, percent-decoded, whole (room
-- version 12 ids have no server part), for every version prefix.
local function room_key(path)
  local query = path:find("?", 1, true)
  local p = query and path:sub(1, query - 1) or path
  local segment = p:match("^/_matrix/client/.-/rooms/([^/]+)")
    or p:match("^/_matrix/client/.-/join/([^/]+)")
    or p:match("^/_matrix/client/.-/knock/([^/]+)")
  if segment then return unescape(segment) end
  return nil
end

local function access_token(headers)
  local auth = headers:get("authorization")
  if auth then
    local token = auth:match("^[Bb]earer%s+(%S+)")
    if token then return token end
  end
  local query = (headers:get(":path") or ""):match("[?&]access_token=([^&]+)")
  if query then return unescape(query) end
  return nil
end

local function whoami(handle, token)
  return handle:httpCall(WHOAMI_CLUSTER, {
    [":method"] = "GET",
    [":path"] = "/_matrix/client/v3/account/whoami",
    [":authority"] = "matrix-stack-router",
    ["authorization"] = "Bearer " .. token,
  }, "", 5000)
end

-- The user: decoded from a Synapse token (syt_<base64 localpart>_...), else asked of Synapse
-- (whoami) and cached for CACHE_TTL seconds; a token Synapse does not know still sticks by itself.
-- No answer (an instance just died: asked once more, likely of another) is not cached: the user
-- sticks by the token for this request only, and finds their instance again on the next.
local function user_key(handle)
  local headers = handle:headers()
  local token = access_token(headers)
  if token == nil then return nil end
  local encoded = token:match("^syt_([^_]+)_")
  if encoded then
    local localpart = localpart_of(encoded)
    if localpart then return localpart end
  end
  local now = os.time()
  local hit = cache[token]
  if hit and hit.expires > now then return hit.key end
  local key = tag(token)
  local reply_headers, body = whoami(handle, token)
  local status = reply_headers and reply_headers[":status"] or ""
  if status == "" or status:sub(1, 1) == "5" then
    reply_headers, body = whoami(handle, token)
    status = reply_headers and reply_headers[":status"] or ""
    if status == "" or status:sub(1, 1) == "5" then return key end
  end
  if status == "200" and body then
    local localpart = body:match('"user_id"%s*:%s*"@([^:"]+)')
    if localpart then key = unescape(localpart) end
  end
  if cache_size >= CACHE_MAX then cache, cache_size = {}, 0 end
  if hit == nil then cache_size = cache_size + 1 end
  cache[token] = { key = key, expires = now + CACHE_TTL }
  return key
end

-- The origin server of a federation request (X-Matrix origin=...), else the client address
-- (Envoy has already taken it from X-Forwarded-For, trusting the configured hops).
local function origin_key(handle)
  local auth = handle:headers():get("authorization")
  if auth and auth:match("^X%-Matrix") then
    local origin = auth:match('origin="([^"]+)"') or auth:match("origin=([^,%s]+)")
    if origin then return origin end
  end
  local address = handle:streamInfo():downstreamRemoteAddress() or ""
  return address:match("^%[(.+)%]:%d+$") or address:match("^(.+):%d+$") or address
end

-- A route either hashes or takes media, never both (the chart refuses an entry with both), so the
-- common case, a hashed route, reads one metadata field and no body length.
function envoy_on_request(handle)
  local headers = handle:headers()
  -- Only the router sets the hash header: every copy a client sent goes first, so that not even an
  -- error further down (Envoy then lets the request on) can pass one to the ring hash.
  headers:remove(HASH_HEADER)
  local metadata = handle:metadata()
  local hash = metadata:get("hash")
  local key = nil
  if hash == "room" then
    key = room_key(headers:get(":path") or "")
  elseif hash == "user" then
    key = user_key(handle)
    headers = handle:headers() -- again: handles taken before an httpCall (whoami) are invalid after it
  elseif hash == "origin" then
    key = origin_key(handle)
  else
    local limit = tonumber(metadata:get("max_bytes") or "")
    local length = tonumber(headers:get("content-length") or "0")
    if limit and length and length > limit then
      handle:respond({ [":status"] = "413", ["content-type"] = "application/json" },
        '{"errcode":"M_TOO_LARGE","error":"Request body too large"}')
      return
    end
  end
  if key then headers:replace(HASH_HEADER, key) end
end
