export {
  escapeParamValue,
  formatSyslog,
  frameOctetCounting,
  parseOctetCounted,
  type StructuredDataElement,
  type SyslogMessage,
  type SyslogSeverity,
} from './syslog.ts';
export {
  escapeCefExtension,
  escapeCefHeader,
  formatCef,
  parseCefExtension,
  type CefEvent,
} from './cef.ts';
export {
  parseSyslogUrl,
  sendSyslogBatch,
  SyslogDeliveryError,
  type SyslogTarget,
} from './syslog-sender.ts';
export {
  signWebhook,
  verifyWebhook,
  WEBHOOK_SIGNATURE_VERSION,
  type WebhookVerification,
} from './webhook-signature.ts';
