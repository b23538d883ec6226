/**
 * Case-insensitive email comparison, ASCII letters only. `String#toLowerCase` folds some non-ASCII
 * characters onto ASCII ones (U+212A KELVIN SIGN becomes `k`), so a different address could compare
 * equal to a configured one, e.g. to an ADMIN_EMAILS entry.
 */
export const emailKey = (email: string): string => email.replace(/[A-Z]/g, (letter) => letter.toLowerCase());
