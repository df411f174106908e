variable "region" {
  description = "AWS region."
  type        = string
}

variable "name" {
  description = "Cluster name, e.g. `magento-production`."
  type        = string
}

variable "state_bucket" {
  description = "S3 bucket of the Terraform states (network and data are read from it)."
  type        = string
}

variable "public_access_cidrs" {
  description = "Networks allowed to reach the Kubernetes API."
  type        = list(string)

  # Required, and never the checked-in example: a placeholder must not reach an apply.
  validation {
    condition     = alltrue([for c in var.public_access_cidrs : !can(regex("^(192\\.0\\.2|198\\.51\\.100|203\\.0\\.113)\\.", c)) && c != "0.0.0.0/0"])
    error_message = "Placeholder: public_access_cidrs hold a documentation network (RFC 5737 TEST-NET) or 0.0.0.0/0: set the operators' networks."
  }
}

variable "namespace" {
  description = "Kubernetes namespace of Magento (the overlay's)."
  type        = string
}

variable "cluster_admin_arns" {
  description = "IAM roles with cluster-admin access entries (operators, CI's deploy role)."
  type        = list(string)

  # Required, and never the checked-in example: a placeholder must not reach an apply.
  validation {
    condition     = alltrue([for a in var.cluster_admin_arns : !can(regex(":(000000000000|111111111111|222222222222|333333333333|444444444444|555555555555|666666666666|777777777777|888888888888|999999999999|123456789012):", a))])
    error_message = "Placeholder: cluster_admin_arns name the example account: set the operators' IAM roles in this account."
  }
}

variable "system_node_count" {
  description = "Nodes of the system group."
  type        = number
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

data "terraform_remote_state" "network" {
  backend = "s3"
  config = {
    bucket = var.state_bucket
    key    = "network/terraform.tfstate"
    region = var.region
  }
}

data "terraform_remote_state" "data" {
  backend = "s3"
  config = {
    bucket = var.state_bucket
    key    = "data/terraform.tfstate"
    region = var.region
  }
}

module "compute" {
  source = "../../modules/compute"

  name                    = var.name
  private_subnet_ids      = data.terraform_remote_state.network.outputs.private_subnet_ids
  nodes_security_group_id = data.terraform_remote_state.network.outputs.nodes_security_group_id
  media_policy_arn        = data.terraform_remote_state.data.outputs.media_policy_arn
  secrets_kms_key_arn     = data.terraform_remote_state.data.outputs.kms_key_arn
  cluster_admin_arns      = var.cluster_admin_arns
  public_access_cidrs     = var.public_access_cidrs
  system_node_count       = var.system_node_count
  namespace               = var.namespace
  tags                    = var.tags
}

output "cluster_name" {
  description = "EKS cluster name."
  value       = module.compute.cluster_name
}

output "karpenter_queue_name" {
  description = "Karpenter interruption queue."
  value       = module.compute.karpenter_queue_name
}

output "irsa_role_arns" {
  description = "IAM roles for the overlays' service accounts."
  value       = module.compute.irsa_role_arns
}
