export {
  AUTH_COLUMN,
  AUTH_ROLE_PREFIX,
  AUTH_USER_PREFIX,
  type AuthInfo,
  type AuthRow,
  AuthStore,
  type Permission,
  PermissionType,
  ROOT_ROLE,
  ROOT_USER,
} from "./auth-store.js";
export { type JwtOptions, JwtTokens, parseJwtOptions } from "./jwt-tokens.js";
export { DEFAULT_BCRYPT_COST, hashPassword, passwordMatches } from "./password-hash.js";
export { type KeyedTokenCheck, PublishedKeys, SIGNING_KEY_PREFIX } from "./published-keys.js";
export { intervalOf, RangeUnion } from "./range-permissions.js";
export { SimpleTokens, simpleToken, simpleTokenPrefix } from "./simple-tokens.js";
