# --- naming and placement -------------------------------------------------------------

variable "name" {
  description = "Short name used for every resource (Azure, Entra ID, AWS). Lowercase letters, digits and hyphens."
  type        = string
  default     = "crosscloud"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,10}[a-z0-9]$", var.name))
    error_message = "name must be 3-12 characters: lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "azure_location" {
  description = "Azure region; it must offer Flex Consumption (`az functionapp list-flexconsumption-locations`)."
  type        = string
}

variable "azure_subscription_id" {
  description = "Azure subscription to deploy into. null = ARM_SUBSCRIPTION_ID or the Azure CLI's default."
  type        = string
  default     = null
}

variable "azure_tenant_id" {
  description = "Entra ID tenant of that subscription. null = ARM_TENANT_ID or the Azure CLI's tenant."
  type        = string
  default     = null
}

variable "aws_region" {
  description = "AWS region for STS and the S3 buckets (the app's AWS_REGION)."
  type        = string
  default     = "us-east-1"
}

variable "tags" {
  description = "Tags added to every Azure and AWS resource."
  type        = map(string)
  default     = {}
}

# --- Azure data -----------------------------------------------------------------------

variable "data_container_name" {
  description = "Blob container that is listed, read and backed up."
  type        = string
  default     = "data"
}

variable "data_replication_type" {
  description = "Replication of the data storage account (GRS, RAGRS, GZRS or RAGZRS)."
  type        = string
  default     = "GRS"

  validation {
    condition     = contains(["GRS", "RAGRS", "GZRS", "RAGZRS"], var.data_replication_type)
    error_message = "data_replication_type must be geo-redundant: GRS, RAGRS, GZRS or RAGZRS."
  }
}

variable "blob_soft_delete_days" {
  description = "Soft-delete retention for blobs and containers in both storage accounts."
  type        = number
  default     = 7
}

variable "download_links_enabled" {
  description = "Grant 'Storage Blob Delegator' on the data account so the app can mint user delegation SAS links: ?link=true, and the 307 redirect for Azure reads above DOWNLOAD_MAX_BYTES. false = both fail with 403 (reads up to the inline cap still work)."
  type        = bool
  default     = true
}

# --- Function App ---------------------------------------------------------------------

variable "function_maximum_instance_count" {
  description = "Flex Consumption scale-out limit."
  type        = number
  default     = 40
}

variable "function_instance_memory_mb" {
  description = "Flex Consumption instance size (2048 or 4096)."
  type        = number
  default     = 2048

  validation {
    condition     = contains([2048, 4096], var.function_instance_memory_mb)
    error_message = "function_instance_memory_mb must be 2048 or 4096."
  }
}

variable "backup_schedule" {
  description = "NCRONTAB (UTC) of the scheduled backup (the app's BACKUP_SCHEDULE)."
  type        = string
  default     = "0 0 2 * * *"
}

variable "backup_fanout" {
  description = "The app's BACKUP_FANOUT: off (one instance runs a backup) or queue (shards on the queue, copied by many instances; docs/backup.md says when)."
  type        = string
  default     = "off"

  validation {
    condition     = contains(["off", "queue"], var.backup_fanout)
    error_message = "backup_fanout must be off or queue."
  }
}

variable "backup_queue_name" {
  description = "Storage queue of the backup fan-out shards (the app's BACKUP_QUEUE_NAME); its poison queue is <name>-poison."
  type        = string
  default     = "crosscloud-backup-shards"

  validation {
    condition     = can(regex("^[a-z0-9](?:[a-z0-9]|-[a-z0-9]){2,55}$", var.backup_queue_name))
    error_message = "backup_queue_name must be 3-56 lowercase letters, digits and single hyphens (room for -poison)."
  }
}

variable "log_retention_days" {
  description = "Log Analytics retention for the app's telemetry."
  type        = number
  default     = 30
}

# --- AWS ------------------------------------------------------------------------------

variable "s3_bucket_name" {
  description = "S3 bucket that is listed and read (S3_BUCKET). Globally unique."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.s3_bucket_name))
    error_message = "s3_bucket_name must be a valid S3 bucket name (3-63 lowercase letters, digits, '.', '-')."
  }
}

variable "backup_s3_bucket_name" {
  description = "Backup destination bucket (BACKUP_S3_BUCKET). null = the data bucket."
  type        = string
  default     = null

  validation {
    condition     = var.backup_s3_bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", coalesce(var.backup_s3_bucket_name, "placeholder")))
    error_message = "backup_s3_bucket_name must be a valid S3 bucket name."
  }
}

variable "backup_s3_prefix" {
  description = "Key prefix the backup role may write under (BACKUP_S3_PREFIX). Never empty: an empty prefix would let the backup role overwrite the whole bucket."
  type        = string
  default     = "backup/"

  validation {
    condition     = can(regex("^[A-Za-z0-9!_.'()-]+(/[A-Za-z0-9!_.'()-]+)*/$", var.backup_s3_prefix))
    error_message = "backup_s3_prefix must be non-empty, must not start with '/', must end with '/' and must not contain '//' or IAM wildcards (* ?)."
  }
}

variable "enable_restore" {
  description = "Grant what `restore` needs and nothing else does: a crosscloud-restore role that may list and read backup versions (s3:ListBucketVersions, s3:GetObjectVersion on the backup prefix), set as AWS_RESTORE_ROLE_ARN, and 'Storage Blob Data Contributor' on the data container (writes). Off by default: the app then cannot write to Azure at all."
  type        = bool
  default     = false
}

variable "noncurrent_version_expiration_days" {
  description = "Days S3 keeps overwritten/deleted object versions before expiring them."
  type        = number
  default     = 30
}

variable "role_max_session_duration" {
  description = "Maximum STS session length of both roles, in seconds (the app refreshes credentials before expiry)."
  type        = number
  default     = 3600
}

variable "oidc_thumbprints" {
  description = "Optional CA thumbprints for the IAM OIDC provider. Empty = let IAM verify the issuer's TLS certificate against its trusted root CAs (see aws.tf)."
  type        = list(string)
  default     = []
}
