// services/auth: password verification and JWT signing for the gateways (README.md).
export {
  AUTHENTICATE_PATH,
  AuthService,
  type AuthServiceOptions,
  FORWARDED_FOR_METADATA,
} from "./auth-service.js";
export { type AuthenticateResult, Authenticator } from "./authenticate/authenticator.js";
export { type VerifiedPasswordOptions, VerifiedPasswords } from "./authenticate/verified-passwords.js";
export { type AuthConfig, ConfigError, defaultConfig, parseConfig, USAGE } from "./config/auth-config.js";
export { KeyRing, type KeyState, type KeyTimings, type RingKey } from "./keys/key-ring.js";
export { type PublishedJwk, SigningKeys } from "./keys/signing-keys.js";
export { MemberBackend } from "./members/member-backend.js";
export { FailedLoginLimiter, type FailedLoginLimits } from "./rate-limit/failed-login-limiter.js";
export { type AuthServiceProcess, AuthStack, type AuthStackOptions } from "./testing/auth-stack.js";
