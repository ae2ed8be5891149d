// What the broker counts (Broker.counters): each room increments its own fields of the one object.

export interface BrokerCounters {
  /** PUBLISH packets received from clients (Mosquitto's $SYS/broker/publish/messages/received). */
  messagesReceived: number;
  /** Messages delivered to clients ($SYS/broker/publish/messages/sent). */
  messagesSent: number;
  refusedPublish: number;
  refusedSubscribe: number;
  authFailures: number;
  limitDisconnects: number;
  /** Messages not delivered because the receiving client's current identity may not read them. */
  refusedDeliveries: number;
  /** Persisted sessions forgotten because their identity is gone (at start and on reload). */
  forgottenSessions: number;
  /** Password logins refused with CONNACK 3 because the login queue was full. */
  loginsShed: number;
  /** Password logins refused with CONNACK 3 because their address is backing off after failures. */
  loginsBackedOff: number;
  /** Most password checks (scrypt) ever running at once: at most broker.limits.loginConcurrency. */
  loginsPeakInFlight: number;
}

export function zeroCounters(): BrokerCounters {
  return {
    messagesReceived: 0,
    messagesSent: 0,
    refusedPublish: 0,
    refusedSubscribe: 0,
    authFailures: 0,
    limitDisconnects: 0,
    refusedDeliveries: 0,
    forgottenSessions: 0,
    loginsShed: 0,
    loginsBackedOff: 0,
    loginsPeakInFlight: 0,
  };
}
