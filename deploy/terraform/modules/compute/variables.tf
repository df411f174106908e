variable "name" {
  description = "Cluster name, e.g. `magento-production` (also the Karpenter discovery tag)."
  type        = string
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version."
  type        = string
  default     = "1.33"
}

variable "private_subnet_ids" {
  description = "Subnets of nodes and pods (network stack)."
  type        = list(string)
}

variable "nodes_security_group_id" {
  description = "Security group of the nodes (network stack)."
  type        = string
}

variable "public_access_cidrs" {
  description = "Networks allowed to reach the Kubernetes API endpoint (the CI runners, the operators' VPN)."
  type        = list(string)

  validation {
    condition     = length(var.public_access_cidrs) > 0 && !contains(var.public_access_cidrs, "0.0.0.0/0")
    error_message = "Name the networks that may reach the Kubernetes API; 0.0.0.0/0 is refused."
  }
}

variable "system_node_instance_types" {
  description = "Managed node group for system pods (CoreDNS, Karpenter itself, controllers)."
  type        = list(string)
  default     = ["m6i.large"]
}

variable "system_node_count" {
  description = "Nodes of the system group."
  type        = number
  default     = 2
}

variable "media_policy_arn" {
  description = "IAM policy for the media bucket (data stack), attached to Magento's roles."
  type        = string
}

variable "namespace" {
  description = "Kubernetes namespace of Magento (deploy/k8s overlays)."
  type        = string
  default     = "magento"
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

variable "secrets_kms_key_arn" {
  description = "KMS key of the data stack's secrets (External Secrets decrypts through Secrets Manager)."
  type        = string
}

variable "cluster_admin_arns" {
  description = "IAM roles given cluster-admin access entries (operators' SSO role, CI's deploy role)."
  type        = list(string)
  default     = []
}
